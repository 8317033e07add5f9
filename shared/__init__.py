"""Headstart's common library: specs, storage, images, datasets, models, reports."""
