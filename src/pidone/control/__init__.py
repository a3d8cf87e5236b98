"""The control socket: its protocol (pure), its server in the loop, `pidone ctl`."""
