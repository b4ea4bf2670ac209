"""Training of the shipped classifiers (:mod:`mlvgm_data.models`) and the scores they give generators."""
