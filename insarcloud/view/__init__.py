"""The local time-series viewer (``insarcloud view``): a velocity map, click a pixel, see its series.

:mod:`insarcloud.view.data` reads one pixel or one map from a cube; :mod:`insarcloud.view.server` serves the
page in ``static/`` and that data as JSON. Nothing is imported here so that ``insarcloud --help`` stays fast.
"""
