"""Pure: Procfile, pidone.toml and .env into frozen specs (specs.py); imports no other layer."""
