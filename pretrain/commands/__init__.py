"""The command-line entry points: each module's main(argv) parses arguments and calls the
library; entry_point() wraps it in pretrain.common.cli.run_entry_point (one-line errors, exit
codes). Reached three ways: the console scripts of setup.cfg (infomin-pretrain, ...),
`python -m pretrain.commands.X`, and the tools/X.py files, which run the module."""
