"""Camera -> vehicles -> plates -> text -> one event per vehicle pass.

source (camera threads, files) -> detect (vehicle and plate detectors) -> ocr
(plate reader) -> rules (formats, known plates) -> track (vehicles per camera) ->
vote (one event per pass). Pure stages take and return the dataclasses of
`types`; only `source` and `recognizer` touch I/O and engines.
"""
