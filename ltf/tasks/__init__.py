"""What a run learns: a task is data + model + loss + metrics (`base.Task`).

    base       the Task protocol every task follows, add_sums
    registry   TASKS (config.task.name -> task), make_task, register_task
    language   next-token prediction on a corpus (the "lm" task)
    synthetic  the classic forgetting tasks: cerg, erg, adding, temporal_order, frequency
    series     time series: forecast, physionet

Where the batches come from is `ltf.data`; a new task goes in a module here.
"""
