"""python -m unlearnlab.cli: the same as the unlearnlab command."""
from . import main

main()
