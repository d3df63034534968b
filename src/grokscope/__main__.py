"""``python -m grokscope``: the same as the ``grokscope`` command."""

from .cli import run

run()
