"""The Administration desktop's pages (each for a role permission:
``console.pages.requires_permission``): the overview, the timeline, the wizards,
Verify and Sync, sessions, agents and the queue, and their actions.

One module per page, each following ``console.pages``: one view renders the page and,
with ``?fragment=1``, its live fragment (console.js re-fetches it with the page's own filters
on every ``/ws/status/`` event). Every page runs a constant number of queries whatever the
number of rows: a COUNT and one slice per list, the filters' options only for the full page.
"""
