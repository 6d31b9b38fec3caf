"""Exports of results for GIS users: Cloud-Optimized GeoTIFFs (``insarcloud export``).

The API is in :mod:`insarcloud.export.geotiff` (``export_cube``, ``export_dataset``, ``write_geotiff``,
``pixel_centre_transform``); this package imports nothing at import time so that ``insarcloud --help``
(which imports ``insarcloud.export.command``) stays fast.
"""
