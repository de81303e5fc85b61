"""The main job: train the brief's MLP on the bundled 8x8 digits, evaluate, save.

    python examples/train_digits.py [--epochs 30] [--output digits_mlp.keras]
"""
import argparse

import pylayers as keras
from pylayers import layers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="digits_mlp.keras")
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = keras.datasets.digits.load_data()
    x_train = x_train.reshape(len(x_train), -1).astype("float32") / 16.0
    x_test = x_test.reshape(len(x_test), -1).astype("float32") / 16.0

    model = keras.Sequential([
        layers.Dense(64, activation="relu", input_shape=(64,)),
        layers.Dense(10, activation="softmax"),
    ])
    model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_split=0.1, verbose=1)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f} "
          f"({len(x_test)} held-out digits, {keras.get_num_threads()} threads, "
          f"{keras.get_kernel_path()} kernels)")
    model.save(args.output)
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
