"""Run by tests/test_any_training.py in a process of its own: a ``tf.distribute`` training.

``mirrored WHERE OUT [EVERY]``: two logical CPU devices (configured before TensorFlow starts), one run
of a small model on the default strategy and one under ``MirroredStrategy`` from the same
weights and data, with ``gradtui.watch`` called inside or outside the strategy's scope; writes
``OUT/one`` and ``OUT/two``.

``worker INDEX PORTS OUT``: one worker of a ``MultiWorkerMirroredStrategy`` on localhost
(``TF_CONFIG`` set here, before TensorFlow starts), a custom loop; every worker asks for
``OUT/w<INDEX>``, and only the chief writes.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def model(keras):
    keras.utils.set_random_seed(0)
    m = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return m


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.normal(size=(128, 20)).astype("float32"), rng.integers(0, 3, 128)


def mirrored(where: str, out: str, every: int = 1) -> None:
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    import gradtui

    x, y = data()
    one = model(keras)
    weights = one.get_weights()
    gradtui.watch(one, out=f"{out}/one", every=every)
    one.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
    with strategy.scope():
        two = model(keras)
        two.set_weights(weights)
        if where == "inside":
            gradtui.watch(two, out=f"{out}/two", every=every)
    if where == "outside":
        gradtui.watch(two, out=f"{out}/two", every=every)
    two.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)


def worker(index: int, ports: list[int], out: str) -> None:
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras

    import gradtui

    x, y = data()
    # Keras 3.15's fit cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585,
    # "PerReplica to a Tensor"): a multi-worker training is a custom loop, as TensorFlow's guide
    # writes it, with the optimizer named to watch
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).with_options(options)
    with strategy.scope():
        m = model(keras)
        opt = keras.optimizers.SGD(0.1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)

    @tf.function
    def step(batch):
        def replica(xb, yb):
            with tf.GradientTape() as tape:
                per_example = loss_fn(yb, m(xb, training=True))
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=32)
            grads = tape.gradient(loss, m.trainable_variables)
            opt.apply_gradients(zip(grads, m.trainable_variables, strict=False))
            return loss

        return strategy.run(replica, args=batch)

    with gradtui.watch(m, out=f"{out}/w{index}", optimizer=opt):
        for _ in range(2):
            for batch in strategy.experimental_distribute_dataset(ds):
                step(batch)


if __name__ == "__main__":
    if sys.argv[1] == "mirrored":
        mirrored(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    else:
        worker(int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")], sys.argv[4])
