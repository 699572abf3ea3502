"""The Textual front end: the app, its screens, widgets and the messages workers post."""
