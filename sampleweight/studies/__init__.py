"""Studies: many runs and what they show together.

`grid` (the resumable cross-product of models x losses x weightings x samplers x optimizers x splits x
seeds, with optional retrained stages, on several devices or as a job array), `report` (paper-style tables
and figures from finished runs, with the paper's own numbers (its models' registered ``published``
figures) beside them, and with a
baseline the paired comparisons of `statistics`: bootstrap intervals, Holm-adjusted p-values), `testset`
(every run of a grid scored alone on a test set, ``evaluate GRID --each``, for the report), `figures`
(recall bars, confusion matrices), `attention` (CBAM attention panels) and `demo` (the embedded
comparison of ``sampleweight demo``). Everything here builds on `sampleweight.engine`; nothing below
imports it. The modules are imported one by one (``from sampleweight.studies.report import write_report``)
so that each command pulls in only what it draws with.
"""
