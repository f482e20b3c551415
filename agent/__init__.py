"""The sidetrail agent: receivers -> processors -> exporters, beside the app whose logs it reads."""
