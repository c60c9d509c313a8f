from mistudio.cli import entry

entry()
