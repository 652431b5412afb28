from dejavu.cli import run

run()
