"""The process and the machine it runs on: device and dtype, CPU threads, whether the hub can be reached,
file locks between processes, and the one-by-one filters for known library chatter. May import: nothing
else in harness (it stands beside config/ at the floor)."""
