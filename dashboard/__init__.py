"""A live dashboard on a real bullyproof cluster: watch the election happen, break it from the page.

It sits beside node/ and chaos/ and uses both (it is started from the CLI, the composition root, and
neither node/ nor chaos/ imports it): observation through the nodes' Leadership API and the recorded
history, actions through the CLI's own functions. See dashboard/server.py for the routes.
"""
