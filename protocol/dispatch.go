package protocol

// decodeType decodes the top-level object of d as package type typ, or
// returns nil for types this package does not know.
func (d *doc) decodeType(typ int) Package {
	f := fields{d: d, obj: 0}
	switch typ {
	case TypeTimeDelay, TypeTimeSync:
		return d.timeSync(typ)
	case TypeNodeSyncRequest, TypeNodeSyncReply:
		return d.nodeSync(typ)
	case TypeBroadcast:
		dest, from, msg := d.message()
		return &Broadcast{Dest: dest, From: from, Msg: msg}
	case TypeSingle:
		dest, from, msg := d.message()
		return &Single{Dest: dest, From: from, Msg: msg}
	case TypeOTAAnnounce:
		p := f.announce()
		return &p
	case TypeOTADataRequest:
		p := f.dataRequest()
		return &p
	case TypeOTAData:
		return &Data{DataRequest: f.dataRequest(), Base64: f.str("data")}
	case TypePerformance:
		return &Performance{
			BroadcastBase: f.broadcastBase(),
			ID:            f.i32("id"),
			Time:          f.i32("time"),
			Stability:     f.i32("stability"),
			FreeMemory:    f.i32("freeMemory"),
			Hardware:      f.str("hardware"),
		}
	case TypeRemoteLog:
		p := &RemoteLog{SingleBase: f.singleBase()}
		for _, e := range f.elements("log") {
			it := f.at(e)
			p.Log = append(p.Log, LogEntry{Seq: it.u32("first"), Line: it.str("second")})
		}
		return p
	case TypeSensor:
		return f.sensor()
	case TypeStatus:
		return f.status()
	case TypeMetrics:
		return f.metrics()
	case TypeMPPT:
		return f.mppt()
	case TypeCommand:
		return f.command()
	case TypeMeshNodeList:
		return f.meshNodeList()
	case TypeMeshTopology:
		return f.meshTopology()
	case TypeMeshAlert:
		return f.meshAlert()
	case TypeMeshBridge:
		return f.meshBridge()
	case TypeEnhancedStatus:
		return f.enhancedStatus()
	case TypeHealthCheck:
		return f.healthCheck()
	case TypeBridgeStatus:
		return f.bridgeStatus()
	case TypeBridgeElection:
		return f.bridgeElection()
	case TypeBridgeTakeover:
		return f.bridgeTakeover()
	case TypeBridgeCoordinate:
		return f.bridgeCoordination()
	case TypeNTPTimeSync:
		return f.ntpTimeSync()
	case TypeGatewayData:
		return &GatewayData{
			SingleBase: f.singleBase(),
			MsgID:      f.u32("msgId"),
			Origin:     f.u32("origin"),
			TS:         f.u32("ts"),
			Priority:   f.u8("prio"),
			Retry:      f.u8("retry"),
			Ack:        f.boolOr("ack", false),
			URL:        f.strIf("dest_url", ""),
			Payload:    f.strIf("payload", ""),
			Content:    f.strIf("content", "application/json"),
		}
	case TypeGatewayAck:
		return &GatewayAck{
			SingleBase: f.singleBase(),
			MsgID:      f.u32("msgId"),
			Origin:     f.u32("origin"),
			Success:    f.boolOr("success", false),
			HTTP:       f.u16("http"),
			TS:         f.u32("ts"),
			Err:        f.strIf("err", ""),
		}
	}
	return nil
}
