"""Dataset runs: every example of a data file analysed, on Dask distributed or in this process.

- :mod:`graphengine.runner.examples`: reading TSV / JSON-lines examples.
- :mod:`graphengine.runner.model`: the model bundle sent to workers, and the model they build.
- :mod:`graphengine.runner.analysis`: one example → one record (QoI templates, statistics, paths).
- :mod:`graphengine.runner.schema`: the versioned record and manifest formats (docs/dataset.md).
- :mod:`graphengine.runner.store`: the output directory: lock, manifest, append-only records, resume.
- :mod:`graphengine.runner.execute`: tasks in this process or on Dask; results stored once.
- :mod:`graphengine.runner.run`: ``graphengine dataset run``.
- :mod:`graphengine.runner.summary`: ``graphengine dataset summarize`` (tables, plots, HTML page).
"""
