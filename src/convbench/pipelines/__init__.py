"""Kedro pipelines: ingestion, preprocessing, training and reporting templates."""
