"""Outputs: where each event goes once the pipeline has decided it.

One file per output, one small interface (`base.Sink`). Local sinks (`sqlite`,
`jsonl`) are written in the caller's thread; network sinks (`mqtt`, `webhook`) are
fed through the durable `outbox`, which retries them in their own threads.
"""
