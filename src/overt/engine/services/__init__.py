"""The service layer: what users can do, as functions over a database session.

The API and the web UI call these; they check input and state, change the
database, record audit events and submit jobs. They never talk to nodes: jobs do.
"""
