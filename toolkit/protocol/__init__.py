"""What is asked: the instrument (items, groups, prompt templates, rating extraction), the
persona sets, and the protocol settings that shape each request. The first stage of the data
flow (protocol -> recorder / ingest -> store -> analysis -> report); imports no later stage.
"""
