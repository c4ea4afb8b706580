"""``python -m wsgiprogress``: the same as ``wsgiprogress-serve``."""
from .cli import main

main()
