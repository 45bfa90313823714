"""The staff side: reading, judging and exporting other people's conversations.

Imports `chat` (its models, rendering and exports), never the reverse. The
models it works on stay in `chat` (the permission codenames are `chat.*`).
"""
