"""An AST walk: parse stdlib modules, visit every node, count node types, ROUNDS times."""

import ast
import collections
import inspect
import sys

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
sources = [inspect.getsource(m) for m in (collections, inspect, ast)]
counts: collections.Counter[str] = collections.Counter()
for _ in range(ROUNDS):
    for src in sources:
        counts.update(type(node).__name__ for node in ast.walk(ast.parse(src)))
print(sum(counts.values()), counts.most_common(1)[0][0])
