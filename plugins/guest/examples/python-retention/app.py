"""Keep-last retention in Python: keep the newest `keep` backups of an
archive (and, with `min_days`, anything younger than that many days); propose
the rest for expiry. Built with componentize-py against coffer:plugin@0.2.0.
"""

import wit_world
from wit_world.imports import log, types
from wit_world.imports.types import PluginError
from componentize_py_types import Err

DAY_MS = 86_400_000


def setting(ctx: types.CallContext, key: str, default: int) -> int:
    for k, v in ctx.config:
        if k == key:
            try:
                return int(v)
            except ValueError:
                raise Err(PluginError("bad_config", f"setting {key} = {v!r} is not a number"))
    return default


class WitWorld(wit_world.WitWorld):
    def plan(self, ctx, archive, backups):
        keep = setting(ctx, "keep", 10)
        min_days = setting(ctx, "min_days", 0)
        newest_first = sorted(backups, key=lambda b: b.committed_at_ms, reverse=True)
        expire = []
        for i, b in enumerate(newest_first):
            young = ctx.now_ms - b.committed_at_ms < min_days * DAY_MS
            if i >= keep and not young:
                expire.append(wit_world.Expiry(b.id, f"older than the newest {keep} backups"))
        log.log(log.Level.INFO, f"archive {archive.id}: {len(expire)} of {len(backups)} proposed")
        return wit_world.Plan(expire)
