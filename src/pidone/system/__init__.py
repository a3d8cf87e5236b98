"""The only code that forks, execs, signals, reaps, chowns, switches identity or binds."""
