"""Feature analysis: one streaming pass builds every feature's dashboard data (Qt-free).

- :mod:`~mistudio.analysis.job`: the job ``features.analyze`` (validation, passes, files);
- :mod:`~mistudio.analysis.results`: the folder layout and :class:`AnalysisResults`;
- :mod:`~mistudio.analysis.repository`: the SQLite rows;
- :mod:`~mistudio.analysis.prompt`: features per token of a text, ablation;
- :mod:`~mistudio.analysis.export`: Neuronpedia JSON and decoder vectors.
"""
