from atlas.cli import entry

entry()
