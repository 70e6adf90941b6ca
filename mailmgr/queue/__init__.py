"""`mailmgr queue`: list, show, retry and delete unfinished messages in the spool."""
