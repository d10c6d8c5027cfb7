import MetaAgents
import MetaTenancy
import MetaWebhooks

// The agents know businesses and locations by their ids only; the core hands them its own
// values here.

extension AgentRequest {
    public init(tenant: Tenant, turn: [InboundMessage], customerName: String? = nil) {
        self.init(businessId: tenant.businessId, locationId: tenant.locationId, turn: turn, customerName: customerName)
    }

    public init(tenant: Tenant, message: InboundMessage) {
        self.init(tenant: tenant, turn: [message], customerName: message.senderName)
    }
}

extension AgentRequest.EarlierMessage {
    public init(_ note: Conversations.PauseNote) {
        self.init(messageId: note.messageId, from: note.from.rawValue, at: note.at, text: note.text)
    }
}
