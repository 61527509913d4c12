"""Face anonymisation on top of demo/face-utility (a package dependency)."""
