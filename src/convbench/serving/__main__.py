"""`python -m convbench.serving <model_uri> [--port 5001] [--host 127.0.0.1] [--workers 1]` (`make serve`)."""

from convbench.serving.cli import main

main()
