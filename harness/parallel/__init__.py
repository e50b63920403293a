"""Work over several processes inside one run: the process group (``distributed``) and which
rank does what (``shard_plan``). Tasks use it, so it sits below them."""
