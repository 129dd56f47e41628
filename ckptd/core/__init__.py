"""The pure core: names, ids, states, the job file and its edits, settings, errors, time.

Nothing here does I/O on the store or the network, and nothing imports a third-party
package: every other part of ckptd builds on these modules.
"""
