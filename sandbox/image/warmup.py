# Run in every new kernel before it is offered: the first real cell then
# finds the common libraries imported and inline plotting configured.

get_ipython().run_line_magic("matplotlib", "inline")  # type: ignore[name-defined]  # noqa: F821
