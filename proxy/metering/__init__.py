"""What a request asks for and what an answer used, in integer units: request bodies,
token estimates, images, usage, prices, token kinds and the API shapes. No I/O."""
