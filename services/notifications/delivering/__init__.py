"""The delivery worker's parts, each a mixin of `notifications.delivery.DeliveryWorker`."""
