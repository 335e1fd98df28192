"""The ``i3d`` command: argument parsing and printing only."""
