"""The benchmark: every variant trained, condensed, exported and measured in one run.

* :mod:`~condense.bench.profiles` — run sizes (``smoke``, ``default``, ``paper``, ``real``).
* :mod:`~condense.bench.rows` — the rows, as data.
* :mod:`~condense.bench.runner` — the run (``condense bench``): train, export, measure every row.
* :mod:`~condense.bench.table` — the table's schema: columns, types, units, the one cell parser.
* :mod:`~condense.bench.report` — ``table.csv`` / ``table.md`` / manifest.
* :mod:`~condense.bench.figures` — ``summary`` / ``pareto`` / ``roc`` figures (``.png`` and ``.svg``).
* :mod:`~condense.bench.predictions` — ``predictions.npz``: the stored test-set scores of a run.
* :mod:`~condense.bench.compare` — ``condense compare``: the CI diff of two tables (paired AUROC test).
"""
