# Run in every new kernel before it is offered: the first real cell then
# finds the common libraries imported and inline plotting configured.
# (Names are imported for the user's namespace, hence the lint exemptions.)
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

get_ipython().run_line_magic("matplotlib", "inline")  # type: ignore[name-defined]
