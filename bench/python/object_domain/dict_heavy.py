"""Dict-heavy: build, index, group and drop many small dicts, as record-shuffling code does."""

import sys
from collections import defaultdict

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
checksum = 0
for r in range(ROUNDS):
    rows = [{"id": i, "group": i % 97, "value": i * r, "extra": {"k": i}} for i in range(100_000)]
    by_id = {row["id"]: row for row in rows}
    groups = defaultdict(list)
    for row in rows:
        groups[row["group"]].append(row)
    sums = {g: sum(x["value"] for x in members) for g, members in groups.items()}
    checksum += sum(sums.values()) + len(by_id)
print(checksum)
