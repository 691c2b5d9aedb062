"""livechat-notifier: pushes live-chat handoff requests to agents and reports chats nobody accepted."""
