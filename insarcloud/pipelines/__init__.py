"""Area jobs: the driver that chains the insarcloud stages for a bounding box (see area_job.py)."""
