"""Pure: the supervisor (events in, actions out), its state table, the snapshot observers read."""
