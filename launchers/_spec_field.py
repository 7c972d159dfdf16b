"""Print one field of a run folder's spec.json (launchers read the run folder, nothing else): FILE KEY DEFAULT."""

import json
import sys

spec_path, key, default = sys.argv[1], sys.argv[2], sys.argv[3]
spec = json.load(open(spec_path))
# Flat keys first, then one level of nesting (e.g. {"distributed": {"nnodes": 2}}).
value = spec.get(key)
if value is None:
    value = next((v[key] for v in spec.values() if isinstance(v, dict) and v.get(key) is not None), None)
print(default if value is None else value)
