"""A seeded synthetic world: a catalog, users with drifting tastes, and their web traffic.

world = World(WorldConfig(seed=7, n_users=2000))
traffic = world.generate(start, end)           # every web-server hit in the window
traffic.tracker_records()                      # human views and clicks as Event dicts
world.choose_clicks("u00042", shown, at, rng)  # a simulated user reacting to recommendations
"""

from recloop.sim.formats import (
    Format,
    access_log_lines,
    iter_lines,
    logstash_records,
    tracker_records,
    write_traffic,
)
from recloop.sim.traffic import Kind, Traffic
from recloop.sim.world import SimError, World, WorldConfig, default_start

__all__ = [
    "Format",
    "Kind",
    "SimError",
    "Traffic",
    "World",
    "WorldConfig",
    "access_log_lines",
    "default_start",
    "iter_lines",
    "logstash_records",
    "tracker_records",
    "write_traffic",
]
