"""What the installed package (`packaging/build_deb.py`) adds around the app.

Shipped as /opt/mistudio/lib/mistudio_setup and put on the venv's path by a ``.pth`` file:
choosing the PyTorch build for this machine, installing it into a torch layer (per user,
or system-wide by an administrator), the first-run window that does so, and the launcher
behind /usr/bin/mistudio. Kept out of ``mistudio/`` because only the package needs it.
"""
