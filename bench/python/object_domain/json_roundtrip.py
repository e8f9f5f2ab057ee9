"""A JSON round trip: a nested document of 20k records dumped and loaded ROUNDS times."""

import json
import sys

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
doc = {
    "records": [
        {"id": i, "name": f"user{i}", "score": i * 0.5, "tags": ["a", "b", str(i % 13)]}
        for i in range(20_000)
    ]
}
for _ in range(ROUNDS):
    doc = json.loads(json.dumps(doc))
print(len(doc["records"]), doc["records"][-1]["name"])
