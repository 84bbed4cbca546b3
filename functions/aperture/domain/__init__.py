"""Pure code: no Flask, no google-cloud. Records, imaging, statistics, transforms."""
