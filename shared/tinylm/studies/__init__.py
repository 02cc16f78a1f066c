"""Research add-ons on top of the engines: the forgetting study, the project engine,
the architecture playground (inspect, sweep)."""
