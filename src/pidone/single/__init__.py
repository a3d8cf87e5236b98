"""Single-command mode (`pidone -- CMD`), the tini recipe: no supervisor, no config."""
