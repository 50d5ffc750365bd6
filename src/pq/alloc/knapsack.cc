// placeholder (the allocator implementation replaces this)
